"""Host machine layer: system info, service providers, process statistics, peripherals."""
