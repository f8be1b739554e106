// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The opcode table, in the manner of io_uring's opdef.c: for each opcode
 * its handler, the SQE flags it takes and the fields it reads.  Every
 * field an opcode does not read must be zero (sqe.c checks that before the
 * handler runs), so the dispatcher names no handler and a new opcode is
 * one entry here plus its handler in the file of its concern.
 */
#include "aem_core_int.h"

static const struct aem_op_def aem_op_defs[AEM_OP_LAST] = {
	[AEM_OP_NOP] = {
		.name		= "nop",
		.issue		= __aem_op_nop,
		.sqe_flags	= AEM_SQE_F_SILENT,
	},
	[AEM_OP_SUBSCRIBE] = {
		.name		= "subscribe",
		.issue		= __aem_op_subscribe,
		.sqe_flags	= AEM_SQE_F_SILENT | AEM_SQE_F_END_STATS,
		.uses		= AEM_OPF_SOURCE | AEM_OPF_ARGS | AEM_OPF_ARG,
	},
	[AEM_OP_UNSUBSCRIBE] = {
		.name		= "unsubscribe",
		.issue		= __aem_op_unsubscribe,
		.sqe_flags	= AEM_SQE_F_SILENT,
		.uses		= AEM_OPF_TARGET,
	},
	[AEM_OP_WRITEBACK] = {
		.name		= "writeback",
		.issue		= __aem_op_writeback,
		.sqe_flags	= AEM_SQE_FLAGS_ALL,
		.uses		= AEM_OPF_TARGET | AEM_OPF_LEN | AEM_OPF_SLOT | AEM_OPF_ARG | AEM_OPF_ARGS,
	},
	[AEM_OP_POST] = {
		.name		= "post",
		.issue		= __aem_op_post,
		.sqe_flags	= AEM_SQE_FLAGS_ALL | AEM_SQE_F_LOSSY,
		.uses		= AEM_OPF_TARGET | AEM_OPF_LEN | AEM_OPF_SLOT | AEM_OPF_ARGS,
	},
	[AEM_OP_CALL] = {
		.name		= "call",
		.issue		= __aem_op_call,
		.sqe_flags	= AEM_SQE_FLAGS_ALL,
		.uses		= AEM_OPF_TARGET | AEM_OPF_LEN | AEM_OPF_SLOT | AEM_OPF_ARG |
				  AEM_OPF_ARGS,
	},
	[AEM_OP_TIMER_SET] = {
		.name		= "timer_set",
		.issue		= __aem_op_timer_set,
		.sqe_flags	= AEM_SQE_F_SILENT,
		.uses		= AEM_OPF_TARGET | AEM_OPF_ARGS,
	},
	[AEM_OP_GEN_SET] = {
		.name		= "gen_set",
		.issue		= __aem_op_gen_set,
		.sqe_flags	= AEM_SQE_F_SILENT,
		.uses		= AEM_OPF_TARGET | AEM_OPF_ARGS,
	},
	[AEM_OP_SEND] = {
		.name		= "send",
		.issue		= __aem_op_send,
		.sqe_flags	= AEM_SQE_FLAGS_ALL,
		.uses		= AEM_OPF_TARGET | AEM_OPF_LEN | AEM_OPF_SLOT | AEM_OPF_ARGS,
	},
	[AEM_OP_SHUTDOWN] = {
		.name		= "shutdown",
		.issue		= __aem_op_shutdown,
		.sqe_flags	= AEM_SQE_F_SILENT,
		.uses		= AEM_OPF_TARGET | AEM_OPF_ARG,
	},
};

/* The definition of @opcode, or NULL for an opcode this core does not know. */
const struct aem_op_def *__aem_op_def(u8 opcode)
{
	if (opcode >= AEM_OP_LAST || !aem_op_defs[opcode].issue)
		return NULL;
	return &aem_op_defs[opcode];
}
