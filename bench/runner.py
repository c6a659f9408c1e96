import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default="register")


def main(args: argparse.Namespace) -> int:
    return 0
