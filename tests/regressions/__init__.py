"""Named regression tests: one per defect an issue lists, each failing on the code the issue was filed against."""
