"""What goes in and comes out: predict sources, datasets, results, output sinks and drawing."""
