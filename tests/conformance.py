"""The message-protocol checks a remote kernel must pass, as a local ipykernel does:
jupyter_kernel_test's suite, plus stdin, comms and interrupts (which it does not cover)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jupyter_kernel_test
from jupyter_kernel_test.msgspec_v5 import validate_message

TIMEOUT = 30


class IPythonKernelConformance(jupyter_kernel_test.KernelTests):
    """Run with ``kernel_name`` set to the spec under test (see ``for_kernel``)."""

    __test__ = False  # not collected on its own: only through for_kernel()

    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "zip?"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
    ]
    code_display_data = [
        {
            "code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))",
            "mime": "text/html",
        },
        {
            "code": "from IPython.display import Math, display; display(Math('\\frac{1}{2}'))",
            "mime": "text/latex",
        },
    ]
    code_history_pattern = "1?2*"
    # ipykernel answers "range" with session 0 even locally; jupyter_kernel_test wants 1.
    supported_history_operations = ("tail", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"

    @classmethod
    def for_kernel(cls, kernel_name: str) -> type[IPythonKernelConformance]:
        return type("RemoteKernelConformance", (cls,), {"kernel_name": kernel_name})

    def _reply(self, msg_id: str) -> dict[str, Any]:
        while True:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                validate_message(reply, reply["msg_type"], msg_id)
                return reply

    def _iopub_until(self, predicate: Any) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            message = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if predicate(message):
                return message
        raise AssertionError("the expected IOPub message never came")

    def test_stdin_input(self) -> None:
        self.flush_channels()
        msg_id = self.kc.execute("answer = input('name? ')", allow_stdin=True)
        request = self.kc.get_stdin_msg(timeout=TIMEOUT)
        self.assertEqual(request["msg_type"], "input_request")
        self.assertEqual(request["content"]["prompt"], "name? ")
        self.kc.input("Ada")
        self.assertEqual(self._reply(msg_id)["content"]["status"], "ok")
        self._iopub_until(
            lambda m: (
                m["msg_type"] == "status"
                and m["parent_header"].get("msg_id") == msg_id
                and m["content"]["execution_state"] == "idle"
            )
        )
        _, output = self.execute_helper("print(answer)")
        self.assertEqual(output[-1]["content"]["text"], "Ada\n")

    def test_comms(self) -> None:
        self.flush_channels()
        self.execute_helper(
            "from comm import get_comm_manager\n"
            "def _target(comm, open_msg):\n"
            "    comm.on_msg(lambda msg: comm.send({'echo': msg['content']['data']}))\n"
            "get_comm_manager().register_target('conformance_echo', _target)\n"
        )
        comm_id = uuid.uuid4().hex
        session, shell = self.kc.session, self.kc.shell_channel
        shell.send(
            session.msg(
                "comm_open", {"comm_id": comm_id, "target_name": "conformance_echo", "data": {}}
            )
        )
        info_id = self.kc.comm_info("conformance_echo")
        comms = self._reply(info_id)["content"]["comms"]
        self.assertEqual(comms[comm_id]["target_name"], "conformance_echo")
        shell.send(session.msg("comm_msg", {"comm_id": comm_id, "data": {"x": 1}}))
        echoed = self._iopub_until(
            lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
        )
        self.assertEqual(echoed["content"]["data"], {"echo": {"x": 1}})
        shell.send(session.msg("comm_close", {"comm_id": comm_id, "data": {}}))

    def test_interrupt(self) -> None:
        self.flush_channels()
        msg_id = self.kc.execute("import time; time.sleep(60)")
        self._iopub_until(
            lambda m: m["msg_type"] == "execute_input" and m["parent_header"]["msg_id"] == msg_id
        )
        time.sleep(0.5)
        self.km.interrupt_kernel()
        reply = self._reply(msg_id)
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
