"""Python osprofiler 4.4.0's cost for the same cases as benches/points.rs.

Run by the points bench through the oracle venv (target/oracle), so both sides are
measured in the same run. Prints one JSON object, times in nanoseconds.
"""
import json
import timeit

from osprofiler import notifier, profiler


def plain(x):
    return x * 3


@profiler.trace("db")
def traced(x):
    return x * 3


def best(fn, number):
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


result = {
    "plain_call": best(lambda: plain(7), 200_000),
    "untraced_trace_call": best(lambda: traced(7), 100_000),
}
notifier.set(lambda info, **kwargs: None)  # a no-op notifier
profiler.init("SECRET_KEY")


def point():
    with profiler.Trace("db"):
        pass


result["point_in_trace"] = best(point, 20_000)
result["traced_call_args_shown"] = best(lambda: traced(7), 20_000)
profiler.clean()
print(json.dumps(result))
