"""Running a program: rendering it to source, the in-process runner, the isolated worker."""
