"""Regenerate the committed contract artifacts: `python -m x402sim.evm.contracts`."""

from x402sim.evm.contracts import write_artifacts

if __name__ == "__main__":
    for written_path in write_artifacts():
        print(f"wrote {written_path.name}")
