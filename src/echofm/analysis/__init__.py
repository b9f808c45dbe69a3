"""Analysis of clips and models: cardiac phase, periodicity diagnostics, figures, reports."""
