import subprocess
import sys
import textwrap

from pydoc_data.topics import topics

from matrixeval.data import TaskSpec, load_task


def test_pydoc_topics_is_nonempty_deterministic_and_well_formed():
    task = load_task(TaskSpec("pydoc_topics"))
    again = load_task(TaskSpec("pydoc_topics"))
    assert task.source == "builtin" and len(task.documents) > 100
    assert task.documents == again.documents
    assert [d.doc_id for d in task.documents] == list(range(len(task.documents)))
    keys = [(d.record["topic"], d.record["paragraph"]) for d in task.documents]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for doc in task.documents:
        words = doc.text.split()
        assert len(words) >= 40
        assert doc.text == " ".join(words) == doc.record["text"]
        assert doc.text in " ".join(topics[doc.record["topic"]].split())


def test_every_long_paragraph_of_a_topic_is_kept():
    docs = [d for d in load_task(TaskSpec("pydoc_topics")).documents if d.record["topic"] == "assert"]
    expected = [" ".join(p.split()) for p in topics["assert"].split("\n\n") if len(p.split()) >= 40]
    assert [d.text for d in docs] == expected


def test_limit_keeps_a_prefix():
    full = load_task(TaskSpec("pydoc_topics")).documents
    assert load_task(TaskSpec("pydoc_topics"), limit=7).documents == full[:7]


def test_offline_and_cheap_import():
    code = textwrap.dedent(
        """
        import socket, sys
        def no_network(*a, **k):
            raise OSError("network used")
        socket.socket.connect = no_network
        import matrixeval.data as d
        assert "datasets" not in sys.modules, "import matrixeval.data imported datasets"
        task = d.load_task(d.TaskSpec(d.DEFAULT_TASK))
        assert "datasets" not in sys.modules and len(task.documents) > 100
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
