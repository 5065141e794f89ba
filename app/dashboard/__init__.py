"""`ovformer dashboard`: a Streamlit app over the runs, datasets and reports folders.

Entry point: `app.dashboard.main.main(argv) -> int`. The page script is streamlit_app.py;
loaders.py and datasets.py are pure (no streamlit) and figures.py builds the plotly figures,
so all three are unit-tested without a server.
"""
