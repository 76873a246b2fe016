"""The greenfuzz engine, one sub-package per pipeline stage.

Read the tree in the order a program flows through it::

    greenfuzz.strategies   draws programs (Hypothesis)
    program/               the IR: programs, validation, the JSON codec, scale recipes
    families/              the ops, one module per family: each op's type, validation,
                           rendering, model rule and strategy (below program/: the IR
                           is made of them)
    model/                 the reference model: predicts every event (no greenlet import)
    execution/             renders a program to source and runs it (in process or isolated)
    judging/               compares what ran with the model: checks, memory, documented
                           differences
    search/                campaigns, minimizing, differential runs, the matrix, scale runs
    reporting/             findings on disk, standalone reproducers, memory reports
    cli/                   the commands (the only place for argparse and terminal output)

Beside the pipeline: ``target/`` holds the code that runs in the interpreter under test
(standard library only, imports nothing of greenfuzz, pasted into reproducers) and
``envs/`` the environments programs run in (greenlet releases, interpreters, CPUs).
Lower stages never import higher ones; ``.importlinter`` states the contract and CI
checks it.
"""
