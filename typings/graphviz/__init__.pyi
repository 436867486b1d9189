# graphviz 0.20/0.21: only what refgrad.viz.render calls.
FORMATS: set[str]

class ExecutableNotFound(RuntimeError): ...  # noqa: N818  # graphviz's own name

def pipe(
    engine: str,
    format: str,
    data: bytes,
    renderer: str | None = None,
    formatter: str | None = None,
    neato_no_op: bool | int | None = None,
    quiet: bool = False,
) -> bytes: ...
