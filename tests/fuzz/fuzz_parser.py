"""Coverage-guided fuzzing of the SIP parser with atheris (pip install atheris):

    python tests/fuzz/fuzz_parser.py -max_total_time=300 tests/data/torture

The same target runs under hypothesis in tests/unit/test_properties.py on every test run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import atheris

with atheris.instrument_imports():
    from test_properties import fuzz_one

if __name__ == "__main__":
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()
