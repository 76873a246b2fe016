"""Running a scale recipe: millions of greenlets, every value checked, memory proportional to
the live set.

A recipe (``greenfuzz.harness.program.recipes.Recipe``, here a plain dict) names a shape
and its sizes; this file expands it lazily into greenlets and switches and checks each
step as it goes against the recipe's closed-form model (what every switch must return,
which greenlets must be alive), so nothing proportional to the number of operations is
ever stored.  Like the runtime it runs in the *target* interpreter with only the
standard library and the implementation (``__main__.py scale IMPL RECIPE_JSON``, and
pasted into reproducers with ``loader`` and ``memory``), and never imports greenlet
itself.

Shape ``random`` is not expanded here: ``main`` hands it to ``scale_random.py`` (a
seeded stream of every operation, whose events the reference model checks).  The fixed
shapes (``SHAPES``):

* ``parked``: every greenlet descends ``depth`` levels (Python calls, or calls through C
  with ``via="c"``) holding canary locals, then parks; ``rounds`` times each is resumed
  with a token it checks and acknowledges; then the even ones finish (checking every
  canary as they unwind) and the odd ones are killed by dropping the last reference, in
  creation order (each must receive ``GreenletExit`` at once and check its canaries).
* ``waves``: greenlets live briefly, ``wave`` at a time; memory must stay flat.
* ``chain``: each greenlet spawns the next and switches into it; the last returns and the
  value travels back up the parent chain.
* ``ring``: a token passes through every greenlet ``rounds`` times.
* ``tree``: a binary tree of greenlets, each spawned by its parent node; sizes are
  returned up the tree.

Liveness is checked exactly where reference counting decides it (a killed greenlet must
have run its ``GreenletExit`` handler before the ``del`` returns) and, for the greenlets
that finished or were dropped, by weak references to a sample (every ``sample``-th greenlet;
a weakref per greenlet would cost more than the check is worth at 10^7): the output says
so.  Progress and phases are JSON lines on stdout; a failure is a ``finding`` line and exit
status 1.
"""

import gc
import json
import sys
import time
import weakref

from .loader import load_checked
from .memory import peak_rss_bytes, rss_bytes, trim_heap
from .scale_random import run_random
from .words import Shape, Via

SHAPES = tuple(Shape)
FINISH = "finish"


class ScaleFailure(Exception):
    """A step of the run did not do what the recipe's model says: reported as a finding."""

    def __init__(self, kind, phase, greenlet, expected, observed, detail=""):
        Exception.__init__(self, kind)
        self.record = {"kind": kind, "phase": phase, "greenlet": greenlet,
                       "expected": repr(expected), "observed": repr(observed),
                       "detail": detail}


class Run:
    def __init__(self, gl, recipe, out=sys.stdout, progress_every=1.0):
        self.gl = gl
        self.recipe = recipe
        self.out = out
        self.n = int(recipe["greenlets"])
        self.rounds = int(recipe.get("rounds", 1))
        self.depth = int(recipe.get("depth", 0))
        self.via = recipe.get("via", "python")
        self.wave = max(1, int(recipe.get("wave", 1000)))
        self.sample = max(1, int(recipe.get("sample", 1000)))
        self.salt = int(recipe.get("seed", 0)) & 0xFFFF
        self.progress_every = progress_every
        self.switches = 0
        self.killed = 0
        self.phase = ""
        self.phase_start = 0.0
        self.last_progress = 0.0
        self.live = 0
        self.peak_live = 0
        self.deferred = []

    # -- reporting -------------------------------------------------------------------

    def emit(self, **record):
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def begin(self, phase):
        self.phase = phase
        self.phase_start = time.perf_counter()
        self.phase_switches = self.switches

    def end(self, **extra):
        seconds = time.perf_counter() - self.phase_start
        switches = self.switches - self.phase_switches
        self.emit(phase=self.phase, seconds=round(seconds, 4), switches=switches,
                  switches_per_second=round(switches / seconds) if seconds else 0,
                  live=self.live, rss=rss_bytes(), peak_rss=peak_rss_bytes(), **extra)

    def tick(self, done, total):
        now = time.perf_counter()
        if now - self.last_progress >= self.progress_every:
            self.last_progress = now
            self.emit(progress=self.phase, done=done, total=total, live=self.live,
                      rss=rss_bytes())

    def expect(self, expected, observed, i, what="value"):
        if observed != expected:
            raise ScaleFailure("mismatch", self.phase, i, expected, observed, what)

    # -- canaries ------------------------------------------------------------------------

    def canary(self, i, level):
        return ((i * 2654435761) ^ (level * 40503) ^ self.salt) & 0xFFFFFFFF

    def descend(self, i, level, leaf):
        """``depth`` levels of calls, each holding a canary it checks on the way back."""
        mine = self.canary(i, level)
        twice = (mine, level)
        try:
            if level == self.depth:
                result = leaf(i)
            elif self.via == Via.C:  # through C: map() calls back into Python
                result = next(map(lambda _: self.descend(i, level + 1, leaf), (0,)))
            else:
                result = self.descend(i, level + 1, leaf)
        finally:
            if mine != self.canary(i, level) or twice != (mine, level):
                found = ScaleFailure("stack", self.phase, i, self.canary(i, level), mine,
                                "canary at level %d" % level)
                # Raised inside a greenlet being killed it would be lost (greenlet
                # reports it as unraisable): main looks here after each kill.
                self.deferred.append(found)
                raise found
        return result

    # -- shapes ----------------------------------------------------------------------------

    def run(self):
        shape = self.recipe["shape"]
        if shape not in SHAPES:
            raise ValueError("unknown shape %r" % shape)
        gc.disable()  # reference counting decides liveness, as in the model
        self.baseline = rss_bytes()
        try:
            getattr(self, "shape_" + shape)()
        finally:
            gc.enable()

    def shape_parked(self):
        gl, n, main = self.gl, self.n, self.gl.getcurrent()
        run = self

        def leaf(i):
            v = main.switch(("parked", i))
            r = 0
            while v != FINISH:
                run.expect(r, v, i, "token")
                r += 1
                v = main.switch(("ack", i, r))
            return ("done", i)

        def body(i):
            try:
                return run.descend(i, 0, leaf)
            except gl.GreenletExit:
                run.killed += 1
                raise

        greenlets = [None] * n
        samples = []
        self.begin("park")
        for i in range(n):
            g = gl.greenlet(body)
            self.switches += 1
            self.expect(("parked", i), g.switch(i), i)
            greenlets[i] = g
            if i % self.sample == 0:
                samples.append((i, weakref.ref(g)))
            self.live += 1
            if i & 1023 == 0:
                self.tick(i, n)
        self.peak_live = self.live
        self.end(depth=self.depth, via=self.via,
                 bytes_per_live=round((rss_bytes() - self.baseline) / max(1, n)))
        self.begin("resume")
        for r in range(self.rounds):
            for i in range(n):
                self.switches += 1
                self.expect(("ack", i, r + 1), greenlets[i].switch(r), i)
                if i & 1023 == 0:
                    self.tick(r * n + i, self.rounds * n)
        self.end(rounds=self.rounds)
        self.begin("finish and kill")
        for i in range(n):  # in creation order: see measured-limits (map count)
            if i & 1:
                before = self.killed
                greenlets[i] = None
                if self.deferred:
                    raise self.deferred[0]
                self.expect(before + 1, self.killed, i,
                            "GreenletExit delivered when the last reference went")
            else:
                g, greenlets[i] = greenlets[i], None
                self.switches += 1
                self.expect(("done", i), g.switch(FINISH), i)
                self.expect(True, g.dead, i, "dead after returning")
                del g
            self.live -= 1
            if i & 1023 == 0:
                self.tick(i, n)
        self.check_samples(samples)
        trim_heap()
        self.end(killed=self.killed, sampled=len(samples))

    def check_samples(self, samples):
        for i, ref in samples:
            if ref() is not None:
                raise ScaleFailure("leak", self.phase, i, "collected", "alive",
                              "a sampled greenlet (every %d-th) is still alive after the "
                              "program dropped it" % self.sample)

    def shape_waves(self):
        gl, n, wave = self.gl, self.n, self.wave
        self.begin("waves")
        samples = []
        rss = []
        done = 0
        while done < n:
            size = min(wave, n - done)
            batch = [gl.greenlet(lambda i: i * 2) for _ in range(size)]
            self.live = size
            self.peak_live = max(self.peak_live, size)
            for k, g in enumerate(batch):
                i = done + k
                self.switches += 1
                self.expect(i * 2, g.switch(i), i)
                if i % self.sample == 0:
                    samples.append((i, weakref.ref(g)))
            del batch, g
            self.live = 0
            done += size
            self.check_samples(samples)
            samples = []
            if len(rss) < 64 or done >= n:
                trim_heap()
                rss.append(rss_bytes())
            self.tick(done, n)
        # Memory proportional to the live set: after the first waves warm the allocator,
        # RSS must not keep growing with the total.
        settled = rss[min(3, len(rss) - 1)]
        growth = rss[-1] - settled
        allowance = 16 << 20
        if growth > allowance:
            raise ScaleFailure("leak", self.phase, None, "RSS within %d MiB of wave 3's" %
                          (allowance >> 20), "%+.1f MiB" % (growth / 2**20),
                          "memory grew with the total number of greenlets, not the live "
                          "set (%d per wave)" % wave)
        self.end(wave=wave, rss_growth=growth)

    def shape_chain(self):
        """Each greenlet's parent is the one before it; all are started from main (a
        greenlet started from another inherits its recursion depth, so a chain started
        link by link would hit the recursion limit), then the last one returns and the
        value travels back up the parents."""
        gl, n, run, main = self.gl, self.n, self, self.gl.getcurrent()

        def link(i):
            v = main.switch(("ready", i))
            if i == n - 1:
                run.expect(FINISH, v, i, "the word to finish")
                return 1
            run.expect(n - 1 - i, v, i, "links below, returned up the chain")
            if i & 1023 == 0:
                run.tick(n - i, n)
            return v + 1

        self.begin("chain")
        links = [None] * n
        parent = main
        for i in range(n):
            g = gl.greenlet(link, parent)
            self.switches += 1
            self.expect(("ready", i), g.switch(i), i)
            links[i] = parent = g
            self.live += 1
        self.peak_live = self.live
        last = links[-1]
        del parent, g
        self.switches += 1
        self.expect(n, last.switch(FINISH), None, "value at main")
        for i in range(n):
            self.expect(True, links[i].dead, i, "dead after returning")
            links[i] = None
            self.live -= 1
        self.end()

    def shape_ring(self):
        gl, n, rounds, main = self.gl, self.n, self.rounds, self.gl.getcurrent()
        ring = [None] * n
        run = self

        def member(i):
            v = main.switch(("ready", i))  # started from main: see shape_chain
            # Every ring member exists once round 0 starts.  The loop is the plain
            # hand-written one plus one comparison: checking must not cost the rate.
            switch = (ring[i + 1] if i + 1 < n else main).switch
            expected = i
            for _ in range(rounds):
                if v != expected:
                    run.expect(expected, v, i, "token")
                v = switch(v + 1)
                expected += n
            return ("done", i)

        self.begin("ring start")
        for i in range(n):
            ring[i] = gl.greenlet(member)
            self.switches += 1
            self.expect(("ready", i), ring[i].switch(i), i)
        self.live = self.peak_live = n
        self.end()
        self.begin("ring")
        for r in range(rounds):
            self.switches += 1
            self.expect((r + 1) * n, ring[0].switch(r * n), None, "token back at main")
            self.tick(r, rounds)
        self.switches += n * rounds  # the members' own (they do not count: speed)
        self.end(rounds=rounds)
        self.begin("ring finish")
        for i in range(n):  # each is parked in its last switch: let it finish
            self.switches += 1
            self.expect(("done", i), ring[i].switch(None), i)
            ring[i] = None
            self.live -= 1
        self.end()

    def shape_tree(self):
        gl, n, run = self.gl, self.n, self

        def node(i):
            run.live += 1
            run.peak_live = max(run.peak_live, run.live)
            size = 1
            for child_index in (2 * i + 1, 2 * i + 2):
                if child_index < n:
                    child = gl.greenlet(node)
                    run.switches += 1
                    size += child.switch(child_index)
            run.live -= 1
            if i & 1023 == 0:
                run.tick(i, n)
            return size

        self.begin("tree")
        root = gl.greenlet(node)
        self.switches += 1
        self.expect(n, root.switch(0), 0, "size of the tree at main")
        self.end()


def main_random(gl, recipe, events_fd):
    """Shape ``random``: events go to ``events_fd`` (None: unchecked, none recorded)."""
    out = sys.stdout
    out.write(json.dumps({"hello": True, "python": sys.version.split()[0],
                          "implementation": sys.implementation.name,
                          "impl_version": getattr(gl, "__version__", None),
                          "recipe": recipe}) + "\n")
    out.flush()
    done = run_random(gl, recipe, events_fd)
    out.write(json.dumps(dict(done, done=True, switches=done["operations"],
                              peak_rss=peak_rss_bytes())) + "\n")
    out.flush()
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        sys.stderr.write("usage: scale IMPL RECIPE_JSON [EVENTS_FD]\n")
        return 2
    gl, problem = load_checked(argv[0])
    if gl is None:
        sys.stderr.write(problem + "\n")
        return 2
    recipe = json.loads(argv[1])
    if recipe.get("shape") == "random":
        return main_random(gl, recipe, int(argv[2]) if len(argv) == 3 else None)
    run = Run(gl, recipe)
    run.emit(hello=True, python=sys.version.split()[0],
             implementation=sys.implementation.name,
             impl_version=getattr(gl, "__version__", None), recipe=recipe)
    start = time.perf_counter()
    try:
        run.run()
    except ScaleFailure as f:
        run.emit(finding=f.record)
        return 1
    run.emit(done=True, seconds=round(time.perf_counter() - start, 3),
             switches=run.switches, peak_live=run.peak_live, peak_rss=peak_rss_bytes())
    return 0

