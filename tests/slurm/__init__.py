"""SLURM test support: the stub SLURM commands (sbatch_stub) and the real-cluster checks."""
