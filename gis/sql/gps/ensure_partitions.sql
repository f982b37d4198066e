SELECT ensure_gps_partitions(:t0, :t1)
