"""Trackstar sandbox: an emulator of Trackstar's API and Link modal, with faults on demand.

A separate program (never imports Django); see sandbox/README.md.
"""
