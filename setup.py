"""Kept for tools that still call `setup.py`; all metadata lives in pyproject.toml (mirrored in settings.ini)."""
from configparser import ConfigParser
from pathlib import Path

def read_settings(path=Path(__file__).parent/'settings.ini'):
    "The `[DEFAULT]` section of settings.ini as a dict."
    cfg = ConfigParser(delimiters=['='])
    cfg.read(path, encoding='utf-8')
    return dict(cfg['DEFAULT'])

if __name__ == '__main__':
    from setuptools import setup
    setup()
