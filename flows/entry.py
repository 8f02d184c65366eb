"""The ``assay`` command's entry point.

For ``assay run`` it forks the process that runs the stages (see ``assay.ahead``) before the
command line parser, the config or Prefect load: that child's work is what a short run waits
for, and every import it does not share with this process is time saved.
"""

import sys


def main():
    ahead = None
    if sys.argv[1:2] == ["run"] and "--help" not in sys.argv:
        from assay.ahead import Ahead

        # if the command line or the config is wrong, the child sees this process end and exits
        ahead = Ahead.fork()
    from flows import cli

    cli.main(ahead=ahead)


if __name__ == "__main__":
    main()
