/*
 * spec.h: parsing a one-line architecture spec into layer descriptions.
 *
 *   conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten dense(128)
 *   relu dense(10)
 *
 * Tokens are separated by spaces. Keywords: dense(N), conv2d(OC,K[,stride=S][,pad=P]
 * [,groups=G]), dwconv(K[,stride=S][,pad=P]), relu, relu6, hardswish, tanh,
 * maxpool(K[,stride=S]), avgpool(K[,stride=S]), gap, flatten, batchnorm[(eps=E,momentum=M)]
 * (alias bn), add(@A[,@B]), concat(@A[,@B]), and the blocks mbconv(E,OUT[,S]) and
 * resblock(OUT[,S]). A model is a graph: NAME=LAYER names a node, @NAME alone makes the next
 * layer read NAME instead of the node before it, and `input` is the model input. The whole
 * grammar is in docs/layers.md. Errors name the 1-based character position and what was
 * expected there.
 */
#ifndef CND_SPEC_H
#define CND_SPEC_H

#include "layer.h"

#define CND_SPEC_MAX_LAYERS 128
#define CND_SPEC_NAME_MAX   16 /* bytes of a node name with its NUL */

/* Parses `spec` for inputs of shape `in` into at most `max` nodes: type, parameters, the
 * nodes each reads (src, n_src), names, and shapes (in, in2, out, parameter counts). Blocks
 * (mbconv, resblock) expand into nodes here, which is why they need the input shape; with
 * in.c == 0 shapes are not computed and a block is an error. Returns the node count (> 0) or
 * CND_EINVAL with a positioned detail. */
int cnd_spec_parse_graph(const char *spec, cnd_shape_t in, cnd_layer_t *layers, int max);

/* cnd_spec_parse_graph without an input shape: syntax and references only, no blocks. */
int cnd_spec_parse(const char *spec, cnd_layer_t *layers, int max);

#endif
