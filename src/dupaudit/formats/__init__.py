"""Output formats: each module renders a ScanReport to text (render(report) -> str)."""
