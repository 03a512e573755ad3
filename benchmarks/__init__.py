"""Side-by-side speed and accuracy comparisons of mathkit against its peers (scipy, scikit-learn, GPyTorch)."""
