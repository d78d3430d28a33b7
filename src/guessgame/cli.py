"""The `guessgame` command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import resource
import sys
from collections.abc import Sequence

from guessgame import config, observe, outputs, results
from guessgame.bench import command as bench
from guessgame.config import ConfigError, Settings
from guessgame.observe import debugging, loopwatch, own_program, trace, waitgraph

# The game (app), the debugger (threadpdb) and the timeline are imported where a command
# uses them: `guessgame run` loads only what observing someone else's program needs,
# since the program pays for every module loaded before it starts.
from guessgame.protocol import (
    OURS,
    VOCABULARIES,
    Game,
    GameError,
    IdleTimeout,
    LineTooLong,
    NotUTF8,
    PeerClosed,
)

EXIT_FAILED = 1
EXIT_USAGE = 2


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("stage and diagnostics")
    pick = group.add_mutually_exclusive_group()
    pick.add_argument("--stage", metavar="NAME",
                      help="run at this named stage instead of the config's current one")
    pick.add_argument("--async", dest="layers", metavar="LAYERS",
                      help="run these layers as coroutines and the rest as threads: a "
                           "comma-separated subset of connection,session,client,server, "
                           "or none, or all")
    group.add_argument("--config", metavar="PATH",
                       help=f"config file (default: ${config.CONFIG_ENV}, ./{config.DEFAULT_NAME}, "
                            "else the packaged default)")
    group.add_argument("--trace", action="store_true", default=None,
                       help="write one tab-separated line per layer call and bridge crossing "
                            "to stderr: time, thread, task, session, layer, event")
    group.add_argument("--timeline", metavar="FILE.json",
                       help="write the same events as the trace to FILE.json, in Chrome "
                            "trace-event format (open it in ui.perfetto.dev), with an arrow "
                            "per bridge crossing; FILE.png or FILE.svg draws lanes and "
                            "arrows instead (needs matplotlib: the plot extra)")
    group.add_argument("--debug", action="store_true", default=None,
                       help="asyncio debug mode, slow-callback logging, and no timeouts, so "
                            "that a paused debugger does not make the other side give up")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="log only warnings and errors on stderr")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="guessgame",
        description="The number-guessing game, with each layer as threads or coroutines.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", parents=[common], help="server and client in one process",
                               description="Play the two-game scenario with server and "
                                           "client in one process, and print both transcripts.")
    demo.add_argument("--seed", type=int, help="seed the server's guesses; the same seed "
                                               "prints the same transcript at every stage")
    demo.add_argument("--results", metavar="PATH",
                      help="record each game in this SQLite file (default: a temporary one, "
                           "removed at exit; none: record nothing)")

    serve = commands.add_parser("serve", parents=[common], help="serve until SIGINT or SIGTERM",
                                description="Serve games. The first line of stdout is "
                                            "`listening on HOST:PORT`. SIGHUP reads the "
                                            "config again and moves the running server to "
                                            "its stage; SIGUSR1 prints who waits on whom, "
                                            "SIGUSR2 each flavour's sessions, errors and "
                                            "reply latency, on stderr.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    serve.add_argument("--seed", type=int,
                       help="seed the server's guesses: each connection's guesses then depend "
                            "only on the seed and the connection's number (1, 2, ...)")
    serve.add_argument("--no-reports", action="store_true",
                       help="do not print the transcript of each game on stdout")
    serve.add_argument("--results", metavar="PATH",
                       help="record each game in this SQLite file (default: the config's "
                            f"results, else ./{results.DEFAULT_PATH}; none: record nothing)")

    play = commands.add_parser("play", parents=[common], help="play one game against a server",
                               description="Play one game against any server of the protocol.")
    play.add_argument("--host", default="127.0.0.1", help="server address")
    play.add_argument("--port", type=int, required=True, help="server port")
    play.add_argument("--lower", type=int, default=1, help="lowest number of the range")
    play.add_argument("--upper", type=int, default=5, help="highest number of the range")
    play.add_argument("--secret", type=int, default=3, help="the number the server must find")
    play.add_argument("--guesses", type=int, default=5, help="how many guesses the server gets")
    play.add_argument("--words", choices=list(VOCABULARIES), default=OURS.name,
                      help="the decision words to report in: ours (WARMER...), the book's "
                           "(Warmer...) or the Japanese article's (近付いた...); default: "
                           "%(default)s")

    commands.add_parser("stages", parents=[common], help="list the stages in the config",
                        description="List every stage in the config with its async layers, "
                                    "and mark the current one.")
    shown = commands.add_parser(
        "results", parents=[common], help="summarise the games serve recorded",
        description="Per stage, the games recorded, how many were CORRECT and the mean "
                    "guesses; then the last games.")
    shown.add_argument("--results", metavar="PATH",
                       help=f"the SQLite file (default: the config's results, else "
                            f"./{results.DEFAULT_PATH})")
    shown.add_argument("--json", action="store_true", help="print one JSON object instead")
    debug = commands.add_parser(
        "debug", help="run a command under a pdb that knows threads and tasks",
        description="Run COMMAND (demo, serve, play, ...) with --debug under pdb, one per "
                    "thread: step and next stay in the thread and task they were taken in, "
                    "a step into a bridge crossing lands on the other side, one thread at a "
                    "time has the prompt, and `threads`, `tasks` and `waits` show the rest.")
    debug.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                       help="the guessgame command and its options; or PROGRAM.py [ARGS...] "
                            "or -m MODULE [ARGS...], a program of your own, taken as "
                            "`python -m pdb` takes it")
    debug.add_argument("-m", dest="module", metavar="MODULE",
                       help="debug library module MODULE as a script, as python -m does")
    own = commands.add_parser(
        "run", parents=[common], help="run a program of your own under the observers",
        description="Run PROGRAM.py (or -m MODULE) as python would, with its own argv, "
                    "stdin, stdout and exit status, while asyncio.run_coroutine_threadsafe, "
                    "loop.run_in_executor (asyncio.to_thread), janus queues and every loop it "
                    "runs announce their crossings: --trace and --timeline show them, "
                    "SIGUSR1 prints who waits on whom on stderr.")
    own.add_argument("-m", dest="module", metavar="MODULE",
                     help="run library module MODULE as a script, as python -m does")
    own.add_argument("argv", nargs=argparse.REMAINDER, metavar="PROGRAM.py [ARGS...]",
                     help="the program and its arguments")
    bench.add_parser(commands)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    settings = config.load(args.config, args.stage, args.layers)
    changes = {key: value for key in ("trace", "debug")
               if (value := getattr(args, key)) is not None}
    return settings.with_options(**changes)


_handler: logging.Handler | None = None


def program_from(parser: argparse.ArgumentParser,
                 args: argparse.Namespace) -> own_program.Program:
    """The program `run` or `debug` was given: `-m MODULE` or PROGRAM.py, and its args."""
    try:
        return own_program.parse(["-m", args.module, *args.argv] if args.module
                                 else args.argv)
    except own_program.UsageError as error:
        parser.error(str(error))


def configure_logging(quiet: bool, name: str = "") -> None:
    # main() may run many times in one process (tests do): replace the handler rather
    # than stack another, bound to a stderr that may since have been closed.
    global _handler
    for logger in (logging.getLogger(), logging.getLogger("guessgame")):
        if _handler is not None:
            logger.removeHandler(_handler)
    root = logging.getLogger(name)
    _handler = outputs.StderrHandler()
    _handler.addFilter(_add_session)
    _handler.setFormatter(logging.Formatter("guessgame%(session)s: %(message)s"))
    root.addHandler(_handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger("guessgame").propagate = not name


def _add_session(record: logging.LogRecord) -> bool:
    session = trace.SESSION_ID.get()
    record.session = "" if session == "-" else f" {session}"
    return True


def raise_fd_limit() -> None:
    """Each connection holds a descriptor; allow as many as the system lets us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def list_stages(settings: Settings) -> int:
    print(f"stages in {settings.source}:")
    for name, layers in settings.stages.items():
        mark = "*" if name == settings.stage else " "
        print(f"{mark} {name:<20} {layers.async_names}")
    if settings.stage not in settings.stages:
        print(f"* {'(--async)':<20} {settings.layers.async_names}")
    if settings.rollout:
        print(f"  rollout: async {settings.rollout_shares} of new connections, whatever the "
              "stage")
    return 0


def results_path(args: argparse.Namespace, settings: Settings) -> str | None:
    """The results database a command uses: --results, else (but for demo, whose default
    is a throwaway database) the config's, else DEFAULT_PATH; None for `none`."""
    chosen = getattr(args, "results", None)
    if chosen is None and args.command != "demo":
        chosen = settings.results or results.DEFAULT_PATH
    return None if chosen == results.OFF else chosen


def show_results(path: str | None, as_json: bool) -> int:
    if path is None:
        raise results.ResultsError("results: none given; pass --results PATH")
    stages, last = results.read(path)
    if as_json:
        print(json.dumps({"path": path,
                          "stages": [dataclasses.asdict(stage) for stage in stages],
                          "last": [dataclasses.asdict(game) for game in last]}))
        return 0
    print(f"results in {path}: {sum(stage.games for stage in stages)} games")
    print(f"{'stage':<34} {'games':>7} {'correct':>7} {'mean guesses':>12}")
    for stage in stages:
        print(f"{stage.stage:<34} {stage.games:>7} {stage.correct:>7} "
              f"{stage.mean_guesses:>12.2f}")
    print(f"last {len(last)} games, newest first:")
    for game in last:
        print(f"{game.ended_at}  {game.stage}  {game.peer}  {game.lower}..{game.upper}  "
              f"{game.guesses} guesses  {game.outcome}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "bench":
        return bench.run_bench(args, settings)
    if args.command == "stages":
        return list_stages(settings)
    if args.command == "results":
        return show_results(results_path(args, settings), args.json)
    # play is a client whose failures must be one line on stderr, so it names its
    # config only when asked to show more.
    if args.command != "run" and (args.command != "play" or settings.trace or settings.debug):
        logging.getLogger("guessgame").info("%s", settings.describe())
    if settings.trace:
        trace.add_sink(trace.stream_sink())
    with contextlib.ExitStack() as debug_only:
        if settings.debug:
            debugging.show_slow_callbacks()
            # Only under --debug: a thread that prints the wait graph on a stall.
            debug_only.enter_context(waitgraph.StallWatch(settings.stall_report,
                                                          outputs.write_stderr))
            # And one that names the line holding an event loop while it holds it.
            debug_only.enter_context(loopwatch.LoopWatch(settings.loop_block_report,
                                                         outputs.write_stderr))
            debugging.follow_pdb_into_threads()
        return run_traced(args, settings)


def run_traced(args: argparse.Namespace, settings: Settings) -> int:
    if not args.timeline:
        return run_command(args, settings)
    from guessgame.observe import drawing, timeline

    picture = timeline.Timeline(f"guessgame {args.command} at {settings.stage}")
    trace.add_sink(picture, flows=True)
    try:
        return run_command(args, settings)
    finally:  # also after an error or Ctrl-C: the picture shows how far it got
        trace.remove_sink(picture)
        if args.timeline.endswith((".png", ".svg")):
            drawing.draw(picture, args.timeline)
        else:
            picture.write(args.timeline)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "run":
        return own_program.run(args.program, settings.debug)
    from guessgame import app

    if args.command == "demo":
        return app.demo(settings, args.seed, sys.stdout, results_path(args, settings),
                        throwaway_results=args.results is None)
    if args.command == "serve":
        raise_fd_limit()
        return app.serve(settings, args.host, args.port, sys.stdout, args.no_reports, args.seed,
                         results_path(args, settings))
    game = Game(args.lower, args.upper, args.secret, args.guesses)
    return app.play(settings, args.host, args.port, game, sys.stdout, VOCABULARIES[args.words])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(without_separator(sys.argv[1:] if argv is None else argv))
    if args.command == "debug":
        from guessgame.observe import threadpdb

        if not args.module and (not args.argv or args.argv[0] == "debug"):
            parser.error("debug needs a command to run, e.g. `guessgame debug demo`")
        if args.module or own_program.looks_like_program(args.argv[0]):
            return threadpdb.run_program(program_from(parser, args))
        return threadpdb.run(args.argv)
    if args.command == "run":
        args.program = program_from(parser, args)
    # A program of its own keeps the root logger: only guessgame's messages are ours.
    configure_logging(args.quiet, "guessgame" if args.command == "run" else "")
    observe.attach_defaults()
    try:
        settings = settings_from(args)
        if args.command == "play":
            Game(args.lower, args.upper, args.secret, args.guesses)
        if str(getattr(args, "timeline", None)).endswith((".png", ".svg")):
            from guessgame.observe import drawing

            drawing.require()  # before the run rather than after it
        if args.command in ("serve", "demo") and (path := results_path(args, settings)):
            results.prepare(path)  # before serving: a bad path is a usage error
    except (ConfigError, results.ResultsError) as error:
        print(f"guessgame: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:
        parser.error(str(error))
    try:
        try:
            return run(args, settings)
        finally:  # what the log and the trace left waiting comes before the last word
            outputs.flush_stderr_at_exit()
    except results.ResultsError as error:  # `guessgame results` on a missing or bad file
        print(f"guessgame: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (GameError, OSError) as error:
        print(f"guessgame: {describe_failure(error, args)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("guessgame: interrupted", file=sys.stderr)
        return 130


def without_separator(argv: Sequence[str]) -> list[str]:
    """The arguments without a leading `--`.

    `python -m pdb -m guessgame -- demo --seed 1` is the one spelling that works on every
    Python: 3.13.0's pdb takes options after the module name as its own and refuses them
    unless `--` comes first (fixed in 3.13.1), while 3.11 and 3.12 pass the `--` on.
    """
    return list(argv[1:] if argv[:1] == ["--"] else argv)


def describe_failure(error: BaseException, args: argparse.Namespace) -> str:
    """One line for a failure the user can act on. In `play` every game error is the
    server's doing, so the line says so; the protocol's own messages speak of a line."""
    if isinstance(error, OSError):
        # asyncio words a refused connect differently from socket; the errno is the same.
        # A failed name lookup (socket.gaierror) carries a negative errno of its own.
        if error.errno and error.errno > 0:
            reason = os.strerror(error.errno)
        else:
            reason = error.strerror or str(error) or "timed out"
        if args.command == "serve":
            return f"cannot serve on {args.host}:{args.port}: {reason}"
        return f"cannot reach the server: {reason}"
    if isinstance(error, PeerClosed):
        where = " in the middle of a line" if error.mid_line else ""
        return f"server closed the connection{where}"
    if isinstance(error, LineTooLong):
        return f"server sent a line longer than {error.limit} bytes"
    if isinstance(error, NotUTF8):
        return "server sent a line that is not valid UTF-8"
    if isinstance(error, IdleTimeout):
        return f"server sent nothing for {error.seconds:g} seconds"
    return str(error) or type(error).__name__
