/*
 * commands.h: the subcommands of the `condenser` executable. Each is implemented in the folder
 * of the part it belongs to, takes argv with argv[0] = the subcommand name, and returns 0 or a
 * negative CND_E* code with the detail in cnd_err_detail(). main.c dispatches to them.
 * One positive value exists: CND_CMD_EXIT_UNMET, returned by a command that did its work and
 * printed its result but whose goal was not reached (autocompress: no candidate meets the
 * budget); main exits with that status and prints no error.
 */
#ifndef CND_COMMANDS_H
#define CND_COMMANDS_H

/* compress/ */
int cnd_cmd_train(int argc, char **argv);
int cnd_cmd_eval(int argc, char **argv);
int cnd_cmd_info(int argc, char **argv);
int cnd_cmd_quantize(int argc, char **argv);
int cnd_cmd_export(int argc, char **argv);
int cnd_cmd_bench(int argc, char **argv); /* `bench secagg` is crypto/'s (two-word row) */
int cnd_cmd_distill(int argc, char **argv);
int cnd_cmd_import(int argc, char **argv);  /* cmd_import.c: ONNX models */
int cnd_cmd_privacy(int argc, char **argv); /* cmd_privacy.c: the DP-SGD accountant */
int cnd_cmd_data(int argc, char **argv);    /* cmd_data.c: data check */
int cnd_cmd_prune(int argc, char **argv);   /* cmd_prune.c: structured pruning */
int cnd_cmd_predict(int argc, char **argv); /* cmd_predict.c: latency cost model */

/* cmd_autocompress.c: the budgeted search */
int cnd_cmd_autocompress(int argc, char **argv);

#define CND_CMD_EXIT_UNMET 3 /* exit status: done, but the goal was not met (see above) */

/* crypto/ */
int cnd_cmd_keygen(int argc, char **argv);
int cnd_cmd_ca(int argc, char **argv);
int cnd_cmd_bench_secagg(int argc, char **argv);

/* audit/audit_cmd.c: verify, prove, check-proof, checkpoint, export, reconcile, report */
int cnd_cmd_audit(int argc, char **argv);

/* coordinator/: the federation (cmd_coordinator.c, cmd_site.c, cmd_job.c); coordinator/demo/ */
int cnd_cmd_coordinator(int argc, char **argv);
int cnd_cmd_site(int argc, char **argv);
int cnd_cmd_job(int argc, char **argv);
int cnd_cmd_data_check_job(int argc, char **argv); /* cmd_data_job.c: `data check --job` */
int cnd_cmd_demo(int argc, char **argv);
int cnd_cmd_doctor(int argc, char **argv); /* coordinator/demo/cmd_doctor.c: node checks */

/* agent/cmd_agent.c */
int cnd_cmd_agent(int argc, char **argv);

/* proto/ */
int cnd_cmd_bench_proto(int argc, char **argv);

/* coordinator/rollout/cmd_rollout.c, deploy/cmd_edge.c, coordinator/demo/cmd_fleet_sim.c */
int cnd_cmd_rollout(int argc, char **argv);
int cnd_cmd_edge(int argc, char **argv);
int cnd_cmd_fleet_sim(int argc, char **argv);

#endif
