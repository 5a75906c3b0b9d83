"""`python -m yolonas_cli MODE key=value ...`: the same as the `yolo-nas` command."""

from __future__ import annotations

from yolonas_cli.cli.app import main

if __name__ == "__main__":
    main()
