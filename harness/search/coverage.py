"""Rule coverage: which rules of the model and which pairs of ops a campaign's programs
fired, how Hypothesis is steered towards the rare ones, and what ``--stats`` writes."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Dict

from hypothesis import target

from greenfuzz.harness import model
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


def steer(program: Program, fired: Counter, result: CampaignResult,
          seconds: float = 0.0) -> None:
    """Count the rules and op pairs ``program`` fired, and steer Hypothesis (``target``)
    towards programs that fire rare ones, per millisecond it took to run: each rule or
    pair scores 1 / (1 + how often it fired before), so one never seen before is worth
    a thousand seen a thousand times; divided by 1 + its milliseconds, so that steering
    does not fill the campaign with the slowest programs (those that end with the
    interpreter's exit, family shutdown, whose rules are rare because they are dear:
    steering by rarity alone doubled their share and cut programs per second by a
    third, bench figures in the commit)."""
    pairs = op_pairs(program)
    cost = 1.0 + 1000.0 * seconds
    target(sum(1.0 / (1 + result.rules[r]) for r in fired) / cost, label="rare rules")
    target(sum(1.0 / (1 + result.pairs[p]) for p in pairs) / cost, label="rare op pairs")
    result.rules.update(fired)
    result.pairs.update(pairs)


def rule_stats(result: CampaignResult) -> Dict[str, object]:
    """Rule coverage as ``--stats`` writes it: every rule's count, the rules that never
    fired, and the rarest op pairs."""
    every = model.rules()
    return {
        "programs": result.examples,
        "rules": {r: result.rules[r] for r in every},
        "never_fired": [r for r in every if not result.rules[r]],
        "op_pairs_seen": len(result.pairs),
        "rarest_op_pairs": [[a, b, n] for (a, b), n in
                            sorted(result.pairs.items(), key=lambda kv: kv[1])[:20]],
    }
