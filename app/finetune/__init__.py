"""Fine-tuning from the app: runs on exported datasets, held-out videos, the closed loop (services + the tab)."""
