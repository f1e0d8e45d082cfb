-o.cint x;
