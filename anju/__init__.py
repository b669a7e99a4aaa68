"""anju (安居): a telemetry pipeline for the safety sensors of residential estates."""

__version__ = "0.1.0"
__all__ = ["__version__"]
