"""Exceptions that the CLI turns into one clear message and a non-zero exit."""

from __future__ import annotations


class AQAError(Exception):
    """Base class for every error a user can act on.

    The CLI prints ``str(error)`` as a single message and exits with status 1; set
    ``AQA_DEBUG=1`` to see the traceback instead.
    """


class SpecError(AQAError):
    """A spec file is malformed or names something that does not fit.

    Args:
        problems: One ``(path, message)`` pair per problem; ``path`` is the dotted YAML path
            (``model.heads.score.params.hidden``) or an empty string for the whole file.
        source: The file the spec came from, if any.
    """

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            path, msg = self.problems[0]
            return f"{where}{path}: {msg}" if path else f"{where}{msg}"
        lines = [f"{where}{len(self.problems)} problems in the spec:"]
        lines += [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in self.problems]
        return "\n".join(lines)


class UnknownComponentError(AQAError):
    """A registry lookup named a component that is not registered."""


class PluginError(AQAError):
    """A plugin failed to load or registered something invalid."""


class DataError(AQAError):
    """A dataset, annotation file or video is missing, corrupt or inconsistent."""


class PredictNotSupported(DataError, NotImplementedError):
    """A dataset cannot turn an arbitrary video into model input (``aqa predict``).

    Its :meth:`~aqa_framework.interfaces.VideoDataset.read_video` is not implemented.
    """


class CheckpointError(AQAError):
    """A checkpoint or weight file cannot be read or does not fit the model."""


class TrainingDiverged(AQAError):
    """Training stopped because the loss stayed NaN or infinite (``train.max_nonfinite_steps``).

    The message says which checkpoint was kept; the run folder can be resumed from it.
    """


def user_message(exc: BaseException) -> str:
    """The message to show for ``exc``, unwrapped when a DataLoader worker raised it.

    An exception raised in a DataLoader worker process is re-raised in the main process with
    the worker's whole traceback as its message (``Caught DataError in DataLoader worker
    process 0. Original Traceback ...``). The original message is the text after the last
    ``module.Class: `` line of that traceback.

    Args:
        exc: The exception caught.

    Returns:
        Its own message, or the original one for a worker's re-raise.
    """
    text = str(exc)
    if not text.startswith(f"Caught {type(exc).__name__} in DataLoader worker process"):
        return text
    cls = type(exc)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    at = text.rfind(f"\n{name}: ")
    if at < 0:
        return text.rstrip().splitlines()[-1]
    return text[at + len(name) + 3 :].rstrip()
