"""Quality control of renders: metrics, reports, plots, comparison sheets, HTML.

``cinescale qc OUTPUT --source INPUT`` measures flicker, seams at chunk
boundaries, colour drift and detail gain (``metrics``), tabulates and flags
them (``report``), draws them (``plots``), and writes an HTML page next to the
render (``html``). ``cinescale compare`` builds comparison sheets
(``compare``). Nothing here imports torch or diffusers.
"""
