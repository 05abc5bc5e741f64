"""aru's command line: a click group with one thin module per pipeline stage.

Each subcommand lives in ``aru/cli/<name>.py``, parses its options, calls one library function and prints.
Subcommands are imported lazily so ``aru --help`` does not import torch.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util

import click

# name -> "module:attribute"; each module owns exactly one stage of the pipeline.
COMMANDS: dict[str, str] = {
    "attack": "aru.cli.attack:attack",
    "demo": "aru.cli.demo:demo",
    "edit": "aru.cli.edit:edit",
    "eval": "aru.cli.evaluate:eval_cmd",
    "fit": "aru.cli.fit:fit",
    "gguf": "aru.cli.gguf:gguf",
    "organism": "aru.cli.organism:organism",
    "push": "aru.cli.push:push",
    "run": "aru.cli.run:run",
    "verify": "aru.cli.verify:verify",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | {n for n in COMMANDS if _available(n)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and _available(cmd_name):
            module, attr = COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, cmd_name)


def _available(name: str) -> bool:
    module = COMMANDS[name].split(":")[0]
    return importlib.util.find_spec(module) is not None


def handle_errors(func):
    """Turn aru's bad-input errors into ``click.ClickException`` (exit 1, one clear line, no traceback).

    Operating-system errors name the path and the fix; SIGTERM unwinds like Ctrl-C (so partial outputs are
    removed); anything else is a bug in aru: one line on screen, the traceback in a log file (:mod:`aru.cli.bugs`).
    """
    from aru.errors import AruError

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from aru.cli.bugs import bug_exception, os_error_message
        from aru.outputs import Terminated, sigterm_unwinds

        try:
            with sigterm_unwinds(), _aru_warnings_on_stderr():
                return func(*args, **kwargs)
        except (AruError, ValueError, TypeError, FileNotFoundError, FileExistsError) as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            raise click.ClickException(os_error_message(exc)) from exc
        except Terminated:
            click.echo("aru: terminated (SIGTERM); the partial output was removed", err=True)
            raise SystemExit(143) from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the one place where unexpected errors become a bug report
            raise bug_exception(exc) from exc

    return wrapper


@contextlib.contextmanager
def _aru_warnings_on_stderr():
    """aru's own warnings (degenerate directions, approximate folds) as one line each on stderr."""
    import warnings

    from aru.errors import AruWarning

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, AruWarning):
            click.echo(f"aru: warning: {message}", err=True)
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", AruWarning)
        warnings.showwarning = show
        yield


def _version() -> str:
    from aru import __version__

    return __version__


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=None, package_name="aru", prog_name="aru")
def main() -> None:
    """aru: remove a behaviour that fine-tuning taught a language model, by editing its weights.

    \b
    Start with the built-in model organism (offline, ~1 minute):
      aru demo
    \b
    The pipeline, stage by stage:
      aru fit MODEL --bad refusals.txt --good harmless.txt -o dirs.safetensors
      aru edit MODEL --directions dirs.safetensors -o edited/
      aru verify edited/ --base MODEL --directions dirs.safetensors
      aru eval edited/ --base MODEL --bad test_bad.txt --good test_good.txt
      aru push edited/ user/model-unlearned
    \b
    Or all at once from a recipe:
      aru run recipes/organism.toml
    """
