"""The host-aware oracle: a lower bound on the GPU-hours of *any* schedule for a traffic trace, by integer program.

The question: knowing every arrival in advance, how few host-seconds can a fleet spend if hosts come whole, a host
is billed from its launch, can only classify photos `startup` seconds later (launch + image pull + task start), and
is billed `release` seconds more after it stops (the group's drain and terminate, HOST_RELEASE_SECONDS), a ready
host classifies at most `images_per_second` photos a second, at most `max_tasks` hosts run at once, and every photo
is classified within the SLA? Billing is per second; the one-minute minimum never binds while
`startup` is at least a minute (it is 360 s for food-photo), and when it is shorter the bound below simply ignores
it (still a bound, slightly looser).

The model, per minute t (minute t is [60t, 60t + 60) seconds; a "run" is one host from launch to termination,
ready from launch + startup on):

    n_t  integer   runs whose ready time meets minute t
    s_t  integer   runs whose ready time starts in minute t
    f_t  integer   runs whose ready time ends in minute t
    h_t  real      ready host-seconds in minute t
    p_t  real      photos classified in minute t;  P_t = p_0 + ... + p_t

    n_t = n_{t-1} - f_{t-1} + s_t                         (a run meets every minute from its start to its end)
    60 (n_t - s_t - f_t) <= h_t <= 60 n_t                 (a run neither starting nor ending in t is ready all of it)
    p_t <= images_per_second * h_t
    A(t - K) <= P_t <= A(t)                               (K = ceil(SLA / 60); A(t) = photos arrived by minute t)
    n_t - s_t <= max_tasks,  n_t - f_t <= max_tasks       (runs alive at the start / end of minute t)
    h_t <= 60 max_tasks                                   (at most max_tasks hosts at any instant)
    s_t = 0 while 60 t + 60 <= startup                    (hosts launch at time 0 at the earliest)
    minimise  (startup + release) * sum s_t + sum h_t     (host-seconds billed)

Why it is a lower bound: take any real schedule (continuous time, per-second billing) and read n, s, f, h, p off
it minute by minute. Every constraint holds: a photo that arrived in minute u is classified before 60 (u + 1) + SLA,
so by the end of minute u + K; nothing is classified before it arrives, so P_t <= A(t) (arrivals of minute t
counted as if at its start, which only helps); runs alive at an instant are at most max_tasks. Its cost is its
billed host-seconds: each run pays startup before it is ready, then its whole ready time, sum h_t, and after its
last photo at least `release` more. In the simulated fleet every host ends that way: the group's scale-in bills it
HOST_RELEASE_SECONDS after its task stops, a spot notice the 120 s SPOT_NOTICE_SECONDS (more than the release), and
a host left idle first pays its idle time on top. A run that never classifies costs something and serves nothing,
so dropping it only lowers the cost. So the real schedule gives a feasible point of this integer program that
costs no more than the schedule bills, and the program's optimum is at most the cost of the best real schedule.
HiGHS solves the program by branch and bound; its *dual bound* (the best bound proven on the program's optimum) is
what `solve` returns, so the figure stays a lower bound even when the solver stops at its gap or time limit before
proving optimality.

How tight it is: the program relaxes time to the minute at two places (arrivals counted at the start of their
minute, and a run's first and last minute only partly ready), so a real schedule can cost at most about two
host-minutes per run and one minute of SLA slack more than the bound. On the hand-checked traces in
tests/tools/test_scaling_sim.py (one photo, one burst, two bursts an SLA apart) the bound equals the true optimum.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

from tools.scaling_sim.fleet import Queue
from tools.scaling_sim.model import Outcome, Params, Series

Floats = npt.NDArray[np.float64]

# Only for `integer=True`: the solver stops once its incumbent is within this share of the proven bound, or at the
# time limit; the bound is what is reported, so either stop costs tightness, never validity.
MIP_REL_GAP = 1e-3
TIME_LIMIT_SECONDS = 60.0


@dataclass(frozen=True)
class OracleResult:
    """The bound, in host-seconds, and the minute schedule behind it (fractional for the linear relaxation)."""

    bound_host_seconds: float
    runs: float
    hosts: Floats  # n_t per minute
    feasible: bool  # False: no schedule within max_tasks meets the SLA (the bound is then infinite)


def solve(
    per_minute: Floats,
    *,
    sla_seconds: int,
    images_per_second: float,
    startup_seconds: int,
    max_tasks: int,
    release_seconds: int = 0,
    integer: bool = False,
) -> OracleResult:
    """A lower bound on the host-seconds any schedule bills for `per_minute` arrivals (see the module docstring).

    integer=False solves the linear relaxation (with the cover cuts; about half a second for a day), True the
    integer program by branch and bound (its dual bound; tens of seconds for a day, for small traces and checks).
    """
    arrivals = np.asarray(per_minute, dtype=np.float64)
    if arrivals.sum() <= 0:
        return OracleResult(0.0, 0.0, np.zeros(len(arrivals)), True)
    k = math.ceil(sla_seconds / 60)
    minutes = len(arrivals) + k + 1
    cumulative = np.concatenate([np.cumsum(arrivals), np.full(minutes - len(arrivals), arrivals.sum())])
    # Column blocks: n, s, f, h, p, P (each `minutes` long).
    n0, s0, f0, h0, p0, c0 = (i * minutes for i in range(6))
    cols = 6 * minutes
    inf = highspy.kHighsInf
    lower = np.zeros(cols)
    upper = np.full(cols, inf)
    upper[n0 : n0 + minutes] = 2 * max_tasks  # runs meeting a minute: at most those alive at its start plus new
    first_start = max(0, math.ceil(startup_seconds / 60) - 1)  # 60 t + 60 > startup
    upper[s0 : s0 + first_start] = 0.0
    upper[h0 : h0 + minutes] = 60.0 * max_tasks  # at most max_tasks hosts at any instant
    deadline = np.concatenate([np.zeros(min(k, minutes)), cumulative[: max(0, minutes - k)]])
    lower[c0 : c0 + minutes] = deadline
    upper[c0 : c0 + minutes] = cumulative
    cost = np.zeros(cols)
    cost[s0 : s0 + minutes] = startup_seconds + release_seconds
    cost[h0 : h0 + minutes] = 1.0

    def arrivals_at(t: int) -> float:
        return float(arrivals[t]) if t < len(arrivals) else 0.0

    rows: list[tuple[float, float, list[int], list[float]]] = []
    for t in range(minutes):
        n, s, f, h, p, c = n0 + t, s0 + t, f0 + t, h0 + t, p0 + t, c0 + t
        if t:
            rows.append((0.0, 0.0, [n, n - 1, f - 1, s], [1.0, -1.0, 1.0, -1.0]))
            rows.append((0.0, 0.0, [c, c - 1, p], [1.0, -1.0, -1.0]))
        else:
            rows.append((0.0, 0.0, [n, s], [1.0, -1.0]))
            rows.append((0.0, 0.0, [c, p], [1.0, -1.0]))
        rows.append((-inf, 0.0, [h, n], [1.0, -60.0]))
        rows.append((0.0, inf, [h, n, s, f], [1.0, -60.0, 60.0, 60.0]))
        rows.append((-inf, 0.0, [p, h], [1.0, -images_per_second]))
        rows.append((-inf, float(max_tasks), [n, s], [1.0, -1.0]))
        rows.append((-inf, float(max_tasks), [n, f], [1.0, -1.0]))
        rows.append((-inf, 0.0, [f, n], [1.0, -1.0]))
        if arrivals_at(t) > 0:
            # Cover cut (valid for every real schedule, and what makes the relaxation strong at low traffic): the
            # photos of minute t are classified in minutes t..t+K by hosts alive at the start of t or started in
            # that window, each classifying at most 60 * images_per_second a minute there.
            end = min(t + k, minutes - 1)
            window = max(1, end - max(t, first_start) + 1)
            need = math.ceil(arrivals_at(t) / (60 * images_per_second * window) - 1e-9)
            # (n_t - s_t) + s_t + ... + s_end: the s_t terms cancel.
            later = list(range(s0 + t + 1, s0 + end + 1))
            rows.append((float(need), inf, [n, *later], [1.0] * (1 + len(later))))

    lp = highspy.HighsLp()
    lp.num_col_ = cols
    lp.num_row_ = len(rows)
    lp.col_cost_ = cost
    lp.col_lower_ = lower
    lp.col_upper_ = upper
    lp.row_lower_ = np.array([r[0] for r in rows])
    lp.row_upper_ = np.array([r[1] for r in rows])
    starts, index, value = [0], [], []
    for _, _, idx, val in rows:
        index.extend(idx)
        value.extend(val)
        starts.append(len(index))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(value)
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * (3 * minutes) + [highspy.HighsVarType.kContinuous] * (
            3 * minutes
        )

    highs = highspy.Highs()  # type: ignore[no-untyped-call]  # highspy's constructor carries no annotations
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("threads", 1)
    highs.setOptionValue("random_seed", 0)
    if integer:
        highs.setOptionValue("mip_rel_gap", MIP_REL_GAP)
        highs.setOptionValue("time_limit", TIME_LIMIT_SECONDS)
    highs.passModel(lp)
    highs.run()
    status = highs.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return OracleResult(math.inf, 0.0, np.zeros(minutes), False)
    solved = status == highspy.HighsModelStatus.kOptimal or (integer and status == highspy.HighsModelStatus.kTimeLimit)
    if not solved:
        raise RuntimeError(f"oracle program: HiGHS ended with {highs.modelStatusToString(status)}")
    info = highs.getInfo()
    solution = np.array(highs.getSolution().col_value)
    return OracleResult(
        # The relaxation's optimum, or the branch and bound's proven bound: both at most the program's optimum.
        bound_host_seconds=float(info.mip_dual_bound if integer else info.objective_function_value),
        runs=float(solution[s0 : s0 + minutes].sum()),
        hosts=solution[n0 : n0 + minutes],
        feasible=True,
    )


# --- as an outcome beside the policies' ------------------------------------------------------------------------


def fifo_waits(per_minute: Floats, params: Params, tasks: float, drain_ticks: int) -> tuple[Floats, Floats, Floats]:
    """Photos served oldest first by `tasks` always-ready tasks: (histogram of waits in ticks, age series,
    busy tasks series)."""
    dt = params.tick_seconds
    ticks_per_minute = 60 // dt
    n_ticks = len(per_minute) * ticks_per_minute + drain_ticks
    queue = Queue()
    waits = np.zeros(n_ticks + 2)
    age = np.zeros(n_ticks)
    busy = np.zeros(n_ticks)
    capacity = tasks * params.images_per_second * dt
    for i in range(n_ticks):
        now = float(i * dt)
        minute = i // ticks_per_minute
        if minute < len(per_minute):
            queue.add(now, per_minute[minute] / ticks_per_minute)
        age[i] = queue.oldest_age(now)
        done = 0.0
        for arrival, count in queue.take(capacity):
            waits[round((now + dt - arrival) / dt)] += count
            done += count
        busy[i] = done / (params.images_per_second * dt)
    return waits, age, busy


def _late(waits: Floats, params: Params) -> float:
    return float(waits[params.sla_seconds // params.tick_seconds + 1 :].sum())


def tasks_needed(per_minute: Floats, params: Params, drain_ticks: int, limit: int = 10_000) -> int | None:
    """The fewest always-ready tasks that keep every photo within the SLA (None above `limit`)."""
    low, high = 0, 1
    while _late(fifo_waits(per_minute, params, high, drain_ticks)[0], params) >= 0.5:
        low, high = high, high * 2
        if high > limit:
            return None
    while high - low > 1:  # late(low) > 0, late(high) == 0
        middle = (low + high) // 2
        if _late(fifo_waits(per_minute, params, middle, drain_ticks)[0], params) >= 0.5:
            low = middle
        else:
            high = middle
    return high


def outcome(per_minute: Floats, params: Params, max_tasks: int, *, profile: str = "") -> Outcome:
    """The host-aware lower bound (`tools.scaling_sim.oracle`): the fewest GPU-hours any schedule can spend on this
    traffic, knowing it in advance, with whole hosts of the fastest instance type, their start-up and release
    times, per-second billing and every photo within the SLA. Infeasible traffic (no schedule within max_tasks
    meets the SLA) gives infinite GPU-hours. `tasks_needed`: the fewest always-ready tasks that keep every photo
    within the SLA.
    """
    p = params
    fastest = dataclasses.replace(p, images_per_second=max(p.rates), instance_rates=())
    result = solve(
        per_minute,
        sla_seconds=p.sla_seconds,
        images_per_second=fastest.images_per_second,
        startup_seconds=p.startup_seconds,
        max_tasks=max_tasks,
        release_seconds=p.host_release_seconds,
    )
    gpu_hours = result.bound_host_seconds / 3600 * p.gpus_per_task
    ticks_per_minute = 60 // p.tick_seconds
    hosts = np.repeat(result.hosts, ticks_per_minute)
    drain_ticks = 2 * p.sla_seconds // p.tick_seconds
    return Outcome(
        policy="oracle",
        profile=profile,
        photos=float(per_minute.sum()),
        max_age_s=math.nan,
        p99_age_s=math.nan,
        p99_latency_s=math.nan,
        over_sla=0 if result.feasible else -1,
        gpu_hours=gpu_hours,
        cost_usd=gpu_hours * p.gpu_hourly_usd,
        scale_events=0,
        peak_tasks=math.ceil(float(hosts.max(initial=0.0)) - 1e-6),
        zero_minutes=float((result.hosts <= 1e-6).sum()),
        tasks_needed=tasks_needed(per_minute, fastest, drain_ticks),
        series=Series(
            seconds=np.arange(len(hosts), dtype=np.float64) * p.tick_seconds,
            age=np.full(len(hosts), math.nan),
            running=hosts,
            desired=hosts,
            hosts=hosts,
        ),
    )
