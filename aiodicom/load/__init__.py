"""`aiodicom load`: drive a DICOM peer hard and measure how it answers.

    from aiodicom.load import LoadGenerator, Mix, Plan, Target, Workload
    workload = Workload(Mix.parse("echo=1,store=3"), templates=[...], stamper=...)
    result = await LoadGenerator(Target(host="127.0.0.1", port=11112), Plan(concurrency=8, count=1000),
                                 workload).run()

`workload` builds what is sent (encoded once, re-stamped per operation), `generator` runs it
(closed or open loop), `hold` keeps thousands of associations open, `stats` counts, `report` shows.
"""

from .generator import LoadGenerator, LoadResult, Plan, Target
from .hold import Holder, HoldPlan, HoldResult
from .stats import ErrorKind, Histogram
from .workload import FindQuery, Mix, Stamper, Template, UidSource, Workload, folder_templates, synthetic_template

__all__ = [
    "ErrorKind", "FindQuery", "Histogram", "HoldPlan", "HoldResult", "Holder", "LoadGenerator", "LoadResult", "Mix",
    "Plan", "Stamper", "Target", "Template", "UidSource", "Workload", "folder_templates", "synthetic_template",
]
