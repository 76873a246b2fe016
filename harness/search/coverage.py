"""Rule coverage: which rules of the model and which pairs of ops a campaign's programs
fired, how Hypothesis is steered towards the rare ones, and what ``--stats`` writes."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Dict, Sequence

from hypothesis import target

from greenfuzz.harness import model
from greenfuzz.harness.execution.at_exit import at_exit
from greenfuzz.harness.families import walk
from greenfuzz.harness.program.ir import Program

if TYPE_CHECKING:  # campaign imports this module
    from greenfuzz.harness.search.campaign import CampaignResult


def op_pairs(program: Program) -> Counter:
    """Pairs of op types one right after the other in a script (nested ops included)."""
    pairs: Counter = Counter()
    for _, script in program.scripts():
        names = [type(op).__name__ for op in walk(script)]
        pairs.update(zip(names, names[1:]))
    return pairs


#: What steering takes a program to cost (``estimated_seconds``): a program that ends
#: with the interpreter's exit (family shutdown) needs an interpreter of its own, others
#: about this much per event.  Measured through the worker on 400 drawn programs at
#: load 9 on 2 cores: medians 212 ms for the former, 0.6 ms under 20 events, 6.7 ms for
#: 20-50, 10 ms for 50-100.
AT_EXIT_SECONDS = 0.2
EVENT_SECONDS = 0.0002


def estimated_seconds(program: Program, expected: Sequence[object]) -> float:
    """What running ``program`` costs, from its predicted events: not the time it took,
    which varies from run to run and would make the programs Hypothesis draws (steered
    by it) differ between two runs with the same seed."""
    return (AT_EXIT_SECONDS if at_exit(program) else 0.0) + EVENT_SECONDS * len(expected)


def steer(program: Program, fired: Counter, result: CampaignResult,
          seconds: float = 0.0) -> Counter:
    """Count the rules and op pairs ``program`` fired, and steer Hypothesis (``target``)
    towards programs that fire rare ones, per millisecond it costs
    (``estimated_seconds``): each rule or pair scores 1 / (1 + how often it fired
    before), so one never seen before is worth a thousand seen a thousand times; divided
    by 1 + its milliseconds, so that steering does not fill the campaign with the
    slowest programs (those that end with the interpreter's exit, family shutdown, whose
    rules are rare because they are dear: steering by rarity alone doubled their share
    and cut programs per second by a third, bench figures in the commit).  Returns the
    op pairs."""
    pairs = op_pairs(program)
    aim(fired, pairs, result, seconds)
    result.rules.update(fired)
    result.pairs.update(pairs)
    return pairs


def aim(fired: Counter, pairs: Counter, result: CampaignResult, seconds: float) -> None:
    """Report to Hypothesis how rare what a program fired is (``steer``), without
    counting it: also for a program not run again (a repeat)."""
    cost = 1.0 + 1000.0 * seconds
    target(sum(1.0 / (1 + result.rules[r]) for r in fired) / cost, label="rare rules")
    target(sum(1.0 / (1 + result.pairs[p]) for p in pairs) / cost, label="rare op pairs")


def rule_stats(result: CampaignResult) -> Dict[str, object]:
    """Rule coverage as ``--stats`` writes it: the programs run and the repeats not run
    again (``CampaignResult.repeats``), the run's seconds (interpreter start-up left
    out) and how many of them were past the budget, the programs that failed only after
    other programs (by how they failed), every rule's count, the rules that
    never fired, the rarest op pairs, and a digest of the programs (each job's too, when
    the result merges several: ``jobs``)."""
    every = model.rules()
    stats: Dict[str, object] = {
        "programs": result.examples,
        "repeats": result.repeats,
        "seconds": round(result.elapsed, 3),
        "overrun_seconds": round(result.overrun, 3),
        "programs_digest": result.programs_digest,
        "failed_only_after_other_programs": dict(result.state_dependent_by.most_common()),
        "rules": {r: result.rules[r] for r in every},
        "never_fired": [r for r in every if not result.rules[r]],
        "op_pairs_seen": len(result.pairs),
        "rarest_op_pairs": [[a, b, n] for (a, b), n in
                            sorted(result.pairs.items(), key=lambda kv: kv[1])[:20]],
    }
    if result.per_job:
        stats["jobs"] = result.per_job
    return stats


def chain_digest(previous: str, text: str) -> str:
    """The digest of a sequence of programs, extended by one whose ``repr`` is ``text``
    (``dumps`` indents with json's pure-Python encoder, about 0.9 ms a program where repr
    takes 0.07 ms, measured on drawn programs at load 6.5, 2 cores)."""
    return hashlib.sha256((previous + text).encode()).hexdigest()[:24]
