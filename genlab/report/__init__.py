"""Sample grids, plots and HTML reports."""
