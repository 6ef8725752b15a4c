"""Pictures drawn from the running lab (drawsvg): each module draws one idea."""
