//! Running rsync: argument planning, exit classes, processes, probes (to be written).
