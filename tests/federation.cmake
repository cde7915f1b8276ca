# Tests of the federation: coordinator/ (store, jobs, rounds, daemon) and agent/, the last ones as
# real processes on loopback (CND_BIN is the condenser executable).
cnd_test(test_coord_store LABEL unit LIBS cnd_coordinator cnd_agent TIMEOUT 60)
cnd_test(test_federation_dropout LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 90)
cnd_test(test_federation_restart LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 120)
cnd_test(test_federation_reject LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 120)
cnd_test(test_federation_canary LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 120)
cnd_test(test_federation_demo LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 180)
