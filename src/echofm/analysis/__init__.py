"""Analysis of trained models: periodicity diagnostics, probes, figures, reports."""
