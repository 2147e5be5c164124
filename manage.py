#!/usr/bin/env python
import sys


def main() -> None:
    from config.settings import settings_module_select

    settings_module_select()  # local settings, never by accident in production
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
