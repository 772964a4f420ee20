"""The shop owner's web portal (issue 11): pages, the JSON API and the live view in the browser."""
