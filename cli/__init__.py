"""`newsletter`: the editor's and operator's command line tool."""
