"""The ground floor: errors, the console, devices, sizes, atomic files and the COCO names."""
