"""Analysis: domains from latent maps, their boundaries, baselines and quality metrics."""
