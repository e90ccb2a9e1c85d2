"""The ``vimscope`` command: a lazy click group, so ``vimscope info`` imports no torch.

Every ``VimscopeError`` becomes one line on stderr and its exit code; anything else is a bug, shown as one
line too unless ``--debug`` asks for the traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from vimscope import __version__
from vimscope.cli.process import keep_freed_memory, set_openmp_passive
from vimscope.errors import VimscopeError

set_openmp_passive()  # read when torch loads: before any import of it (nothing above imports torch)
keep_freed_memory()

# subcommand -> "module:attribute"; each lives in its own small module.
SUBCOMMANDS = {
    "info": "vimscope.cli.info:info",
    "segment": "vimscope.cli.segment:segment",
    "features": "vimscope.cli.segment:features",
    "batch": "vimscope.cli.batch:batch",
    "train": "vimscope.cli.train:train",
    "eval": "vimscope.cli.train:evaluate",
    "pack": "vimscope.cli.train:pack",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            # A face that is not built in this install: say so rather than crash.
            reason = str(e)

            @click.command(name=name, help=f"(unavailable: {reason})")
            def unavailable():
                raise click.ClickException(f"'vimscope {name}' is unavailable: {reason}")

            return unavailable


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vimscope")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Vision Mamba on gigapixel slides and rasters."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = cli.main(args=argv, prog_name="vimscope", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("vimscope: aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except VimscopeError as e:
        if debug:
            raise
        click.echo(f"vimscope: error: {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("vimscope: interrupted; run the same command again to resume", err=True)
        return 130
    except Exception as e:  # a bug: one line, and how to see more
        if debug:
            raise
        click.echo(f"vimscope: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
        return 70
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
