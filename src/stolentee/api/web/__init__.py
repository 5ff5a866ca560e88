"""The upload page served at ``/``: static HTML, JavaScript and CSS, no build step."""
