"""The web app's parts (app.py at the repository root puts them together): where databases
come from (``sources``), the work the UI, the client API and REST share (``service``),
result formatting (``results``), the UI's event handlers (``handlers``) and the two APIs
(``api``). Everything model- or SQL-related is ``text2sql``'s; this package only serves it.
"""
