"""Invoice documents: one stored invoice rendered as HTML, PDF, CSV and EN 16931 e-invoices."""
