-- 0003: network counters of the sandbox's user-mode stack beside the byte
-- counts 0.4.4 already had (msb metrics shows them).

ALTER TABLE sandbox_metric ADD COLUMN net_rx_packets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandbox_metric ADD COLUMN net_tx_packets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandbox_metric ADD COLUMN net_flows_denied INTEGER NOT NULL DEFAULT 0;
