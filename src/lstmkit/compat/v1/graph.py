"""TF1's graph-mode API — placeholders, sessions, variable scopes — which lstmkit does not have.

lstmkit's TF1 API is eager: every function takes arrays and returns arrays at once. Each name here
raises ``NotImplementedError`` saying how to rewrite the line.
"""

_EAGER = "lstmkit.compat.v1 is eager (arrays in, arrays out): there are no graphs, placeholders or sessions. "


def placeholder(dtype=None, shape=None, name=None):
    raise NotImplementedError(
        _EAGER + "Instead of `x = tf.placeholder(...)` and `sess.run(..., feed_dict={x: x_})`, pass "
        "the array `x_` itself where `x` is used, e.g. `tf.nn.dynamic_rnn(cell, x_, lengths_, "
        "dtype=tf.float32)`.")


class Session:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            _EAGER + "Remove the `with tf.Session() as sess:` block and `sess.run(...)`: the results "
            "are already NumPy arrays (`output_, final_state_ = output, final_state`).")


InteractiveSession = Session


def global_variables_initializer():
    raise NotImplementedError(
        _EAGER + "Delete `sess.run(tf.global_variables_initializer())`: a cell creates and "
        "initializes its variables at its first call (set them with cell.set_weights).")


initialize_all_variables = global_variables_initializer


def get_variable(name, shape=None, dtype=None, initializer=None, **kwargs):
    raise NotImplementedError(
        _EAGER + "Instead of `w = tf.get_variable(name, shape)`, make the array yourself (e.g. "
        "`np.zeros(shape, np.float32)`); a cell's variables are in `cell.variables[name]`.")


def variable_scope(*args, **kwargs):
    raise NotImplementedError(
        _EAGER + "Remove `with tf.variable_scope(...)`: variables belong to the cell object (reuse a "
        "cell by calling the same object); their TF1 names are the keys of `cell.variables`.")


__all__ = ["placeholder", "Session", "InteractiveSession", "global_variables_initializer",
           "initialize_all_variables", "get_variable", "variable_scope"]
