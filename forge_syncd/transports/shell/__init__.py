"""The sh scripts a transport runs on a container, and the parsers of what they print:
pure, and trusting nothing (the output is a hostile container's). Any transport that can
run `sh` there (SSH exec, `docker exec`) uses them."""
