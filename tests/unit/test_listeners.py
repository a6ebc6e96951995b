"""The stop flag that the master shares with its workers."""
import os

from imageserver.listeners import StopFlag


def test_the_stop_flag_is_shared_with_forked_children():
    flag = StopFlag()
    pid = os.fork()
    if pid == 0:
        flag.set()
        os._exit(0)
    os.waitpid(pid, 0)
    assert flag.is_set()
