../x.cint main(void) { return 0; }
